"""One probe pass (`runner`): the connectivity pre-check, the test helper's
client, the link type; and the test helper's own entry point (`helper`)."""
