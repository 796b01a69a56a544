"""Test support shipped with edged: the network-namespace harness."""
