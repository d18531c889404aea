"""The web dashboard: one HTML page drawn with plotly.js from the installed plotly package."""
