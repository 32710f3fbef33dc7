"""Clients of Model: explain, gradcheck, sweep, report and the anomaly check."""
