"""Stream: the Faust app that keeps the live virtual warehouse and raises alerts."""
