-- The k most suspect examples of each audit (all of them in the suspects table and the audit's suspects files).
-- params: k=48, run_id=null
with final as (
    select *
    from suspects
    where rank <= $k and (cast($run_id as integer) is null or run_id = cast($run_id as integer))
)

select * from final
order by run_id, rank
