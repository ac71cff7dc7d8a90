"""Profiles: an agent + provider + endpoint + model + credential, in an isolated home."""
