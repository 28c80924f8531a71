-- Per run and class (label as trained): examples, corrupted share, share of picks and of corrupted picks, mean loss.
-- params: none
with per_example as (
    select
        o.run_id,
        o.example_id,
        sum(o.picked) as picks,
        avg(o.loss) as mean_loss
    from observations as o
    group by o.run_id, o.example_id
),

per_class as (
    select
        e.run_id,
        e.label,
        count(*) as n_examples,
        avg(e.is_corrupted::integer) as corrupted_share,
        sum(p.picks) as picks,
        sum(p.picks * e.is_corrupted::integer) as corrupted_picks,
        avg(p.mean_loss) as mean_loss,
        avg(p.mean_loss) filter (where e.is_corrupted) as mean_loss_corrupted,
        avg(p.mean_loss) filter (where not e.is_corrupted) as mean_loss_clean
    from examples as e
    join per_example as p using (run_id, example_id)
    where e.role = 'train'
    group by e.run_id, e.label
),

final as (
    select
        r.run_id,
        r.method,
        r.corruption,
        r.seed,
        c.label,
        r.classes[c.label + 1] as class_name,
        c.n_examples,
        c.corrupted_share,
        c.picks::double / sum(c.picks) over (partition by c.run_id) as share_of_picks,
        c.n_examples::double / sum(c.n_examples) over (partition by c.run_id) as share_of_examples,
        c.corrupted_picks::double / nullif(c.picks, 0) as corrupted_share_of_picks,
        c.mean_loss,
        c.mean_loss_clean,
        c.mean_loss_corrupted
    from per_class as c
    join runs as r using (run_id)
)

select * from final
order by run_id, label
