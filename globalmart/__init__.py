"""GlobalMart core: platform settings, event contracts, schema migrations and the embedded runtime."""
