"""The generated demo world: a seeded catalogue with audio, users, playlists and listening logs (never part of a production pipeline's inputs)."""
