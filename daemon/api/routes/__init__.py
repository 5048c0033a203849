"""HTTP routes, one blueprint per concern; each route only translates HTTP to a call."""
