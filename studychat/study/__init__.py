"""The study on the server: its definition, participant sessions and their turns."""
