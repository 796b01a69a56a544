"""The daemon: configuration to engine, MQTT control, Home Assistant, systemd."""
