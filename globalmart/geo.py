"""Where the countries are: ISO codes and centroids for maps (API and Grafana geomap)."""

from __future__ import annotations

# country: (ISO 3166-1 alpha-3, latitude, longitude of a central point)
COUNTRY_GEO: dict[str, tuple[str, float, float]] = {
    "USA": ("USA", 39.8, -98.6),
    "UK": ("GBR", 54.0, -2.5),
    "Canada": ("CAN", 56.1, -106.3),
    "Germany": ("DEU", 51.2, 10.4),
    "France": ("FRA", 46.6, 2.2),
}


def locate(country: str) -> tuple[str, float, float]:
    """ISO code and centroid of a country (unknown countries keep their name, at 0, 0)."""
    return COUNTRY_GEO.get(country, (country, 0.0, 0.0))
