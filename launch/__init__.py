"""Launchers: they start training processes and never train themselves."""
