"""Switch off CrewAI's telemetry, tracing and version check before crewai is imported.

Offline runs otherwise stall: first-run tracing waits 5 s per agent and ~5 s at exit,
and telemetry retries an unreachable host. Users can still opt in by setting the
variables themselves; we only fill in defaults.
"""

import os

for _name, _value in {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_TESTING": "true",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
    "CREWAI_STORAGE_DIR": "reelcrew",
}.items():
    os.environ.setdefault(_name, _value)
