"""Browser tests: Playwright's sync API driving Debian's Chromium against pytest-django's live server."""

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync",
]


@pytest.fixture(autouse=True)
def _allow_orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop running in the test thread; Django refuses ORM calls
    # from a thread with a running loop unless told the caller knows they are synchronous. Set only
    # for these tests: a process-wide setting would leak into subprocesses (check --deploy refuses it).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


@pytest.fixture(autouse=True)
def _plain_static_names(settings):
    # The live server serves /static/ through the finders, which know the files by their plain names.
    # Once collectstatic has written a manifest into STATIC_ROOT (make run, or the make run test), the
    # site's storage would link hashed names the live server cannot find: pages then load without their
    # scripts and log 404s. Served by whitenoise in production, those hashed names work.
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}


@pytest.fixture
def browser_page(chromium_path):
    """A fresh page in headless Chromium (never a downloaded browser: the system's own)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()
