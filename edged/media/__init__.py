"""Media sources and sinks: test pattern, tone, time codes and analysis; knows nothing of rooms."""
