"""The stage command lines: `magpie-<stage>` console commands and the original's
`exp/<stage>.py` scripts run the same `main` (one module per stage here)."""
