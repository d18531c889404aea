"""GlobalMart core: settings, event contracts, schema migrations, the embedded runtime."""
