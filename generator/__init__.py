"""GlobalMart."""
