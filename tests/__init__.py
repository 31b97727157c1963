"""The test suites, one package per stage (a package, so that tests/dispatcher is tests.dispatcher and never shadows the dispatcher stage)."""
