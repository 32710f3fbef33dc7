"""Clients of Model: explain, gradcheck, sweep and report."""
