"""Fixtures the end-to-end tests share with the component tests."""

from tests.generator.conftest import catalog  # noqa: F401 - the seeded catalog fixture
