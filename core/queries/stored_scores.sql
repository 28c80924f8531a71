-- Per-example scores of the complete runs, as stored when they completed (see example_scores for the definitions).
-- params: none
-- A score missing from a run's stored map (registered after the run completed) comes out NULL; the analysis layer
-- computes such runs from their observations instead.
with final as (
    select
        s.run_id,
        s.example_id,
        s.n_observations,
        s.modes,
        -- @stored_scores: one `scores['<x>_score'] as <x>_score,` line per registered score
        s.picks,
        e.label,
        e.true_label,
        e.is_corrupted,
        e.corruption_kind,
        e.label != e.true_label as label_changed,
        e.source,
        e.role
    from example_summaries as s
    join examples as e using (run_id, example_id)
)

select * from final
order by run_id, example_id
