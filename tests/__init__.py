"""The tests: a package, so `tests.conftest` is this folder's even where an installed
distribution ships a top-level `tests` package of its own."""
