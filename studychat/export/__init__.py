"""The researcher's export: `flask --app app export` as JSON lines or tidy CSV."""
