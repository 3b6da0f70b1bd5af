"""Developer tooling: the local stack runner and the embedded Redis it (and the tests) start."""
