-- The application's schema and seed data, applied by the `migrate` step.
CREATE TABLE users (
    id   serial PRIMARY KEY,
    name text   NOT NULL UNIQUE
);
INSERT INTO users (name) VALUES ('ada'), ('grace');
