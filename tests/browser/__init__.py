from playwright.sync_api import expect

# Playwright's default of 5 s for an expectation was missed on a loaded machine (two test workers
# with their servers, Chromium and Celery workers on two cores) by pages that did come, late. A
# failing expectation still fails, 10 s later.
expect.set_options(timeout=15_000)
