//! sqlx persistence: PostgreSQL and SQLite behind the core Store trait.
