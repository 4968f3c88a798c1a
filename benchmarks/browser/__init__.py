"""The plan's browser claims, measured in headless Chromium: both pages of ``frontend/``.

``chrome`` launches the system Chromium (never a download) with desktop or mobile emulation;
``page`` holds what runs inside the page (scroll, frame times, bytes, search); ``step`` is the
benchmark: ``run_browser_step(...)`` for ``make bench`` and ``python -m benchmarks.browser``.
"""
