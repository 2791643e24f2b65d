"""Reading: turning retrieved passages into an answer span (the trained reader and its training)."""
