"""Tests on a real Docker engine (run by .ci/run, not by `make test`)."""
