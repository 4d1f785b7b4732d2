"""Self-contained HTML reports with plots (matplotlib PNGs inlined as base64): KPI reports of
experiments and model reports (PR and calibration curves, Recall@k by cutoff).

Every renderer takes plain data and returns the HTML text; ``write_*`` helpers publish the
file atomically. ``screenshot.check_page`` opens a report in headless Chromium."""
