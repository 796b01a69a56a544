"""Home Assistant custom integrations of this repository (HACS installs ``edged/``)."""
