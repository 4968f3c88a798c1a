"""The reference service that workspace-bench measures."""
