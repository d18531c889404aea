"""SQL of the API, one module per resource. Functions take an open async connection (rows as
dicts) and validated parameters, and return response models. Identifiers are never built from
caller input: sort fields and filters map to fixed SQL."""
