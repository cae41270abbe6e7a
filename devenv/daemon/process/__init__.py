"""The devenvd process itself: entry point, start-up wiring, listening servers; the one place that assembles it all."""
