-- How many attempts of a run were cut off by Tickler itself (its process killed while
-- the attempt ran, then reaped as an orphan). Interruptions are not the agent's fault:
-- they do not spend the retry budget (the attempt number is given back) nor count
-- toward the circuit breaker; this count bounds them instead (engine: after the fifth
-- the run is left `unknown` for the operator).
ALTER TABLE runs ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
