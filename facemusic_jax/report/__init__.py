"""What a run leaves for people to look at: plots and the index.html page."""
