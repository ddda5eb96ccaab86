"""The judge of every generative chapter: a feature classifier, classifier FID,
conditional accuracy."""
