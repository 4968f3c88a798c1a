"""Targets, the regression gate, history and the HTML report."""
