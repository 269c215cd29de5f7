"""A demo backend for the bundled example and the tests."""
