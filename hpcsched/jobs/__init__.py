"""Job domain values: states, attempts and jobs as the store and the CLI see them."""
