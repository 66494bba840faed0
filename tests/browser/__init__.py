"""Real-browser tests (headless Chromium from Debian, driven by Playwright): see docs/browser-tests.md."""
