"""The operators' dashboard: the matrix (service x path by operator x link
type), timelines, detected starts and ends of blocking, drill-down to the
signed records, the fleet, alerts; in English, French and Arabic.

Modules: `rollup` (maintained at ingest), `cells` (the matrix and timelines
from the rollups), `changes` (change-point detection), `svg` (timelines as
SVG), `i18n` (Babel catalogues), `alerts` (Atom feed, webhooks), `fleet`,
`operators` (operator tokens), `pages` (view models for the templates)."""
