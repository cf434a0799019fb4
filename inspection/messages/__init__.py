"""The Kafka contract by concern: `frame_id` (which frame), `contract` (records and headers),
`errors` (why a record is refused), `images` (the payload's image), `dead_letters` (where refused
records go). Import from the module that owns a name."""
