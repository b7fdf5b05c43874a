%% The Erlang/OTP anchor for `python -m benchmarks`: the same scenarios on the BEAM, on the
%% same machine, so the performance page shows where Python stands against Erlang itself.
%%
%%   erlc -o /tmp benchmarks/erlang/anchor.erl
%%   erl +P 2000000 -noshell -pa /tmp -run anchor main [quick] -s init stop
%%
%% (benchmarks/_erlang.py does exactly that when `erl` is on PATH.)
%%
%% Prints one JSON object: seconds per operation (call, cast, spawn_stop), bytes per idle
%% process, and the start/stop time of N gen_servers under one simple_one_for_one supervisor.
-module(anchor).
-export([main/0, main/1, init/1, handle_call/3, handle_cast/2, handle_info/2, start_link/0]).

%% ---- a gen_server that echoes calls and counts casts
start_link() -> gen_server:start_link(?MODULE, [], []).
init([]) -> {ok, 0};
%% the same module is the supervisor's callback: init/1 returns the flags and children given
init({Flags, Children}) -> {ok, {Flags, Children}}.
handle_call(count, _From, N) -> {reply, N, N};
handle_call(Req, _From, N) -> {reply, Req, N}.
handle_cast(_Msg, N) -> {noreply, N + 1}.
handle_info(_Msg, N) -> {noreply, N}.

now_s() -> erlang:monotonic_time(nanosecond) / 1.0e9.

best(Reps, Fun) -> lists:min([Fun() || _ <- lists:seq(1, Reps)]).

call(N) ->
    {ok, Pid} = start_link(),
    [gen_server:call(Pid, I) || I <- lists:seq(1, 1000)],
    T0 = now_s(),
    call_loop(Pid, N),
    T = now_s() - T0,
    unlink(Pid), exit(Pid, kill),
    T / N.

call_loop(_Pid, 0) -> ok;
call_loop(Pid, K) -> K = gen_server:call(Pid, K), call_loop(Pid, K - 1).

cast(N) ->
    {ok, Pid} = start_link(),
    T0 = now_s(),
    cast_loop(Pid, N),
    N = gen_server:call(Pid, count, infinity),
    T = now_s() - T0,
    unlink(Pid), exit(Pid, kill),
    T / N.

cast_loop(_Pid, 0) -> ok;
cast_loop(Pid, K) -> gen_server:cast(Pid, K), cast_loop(Pid, K - 1).

idle() -> receive stop -> ok end.

spawn_stop(N) ->
    T0 = now_s(),
    Pids = [spawn_monitor(fun idle/0) || _ <- lists:seq(1, N)],
    [P ! stop || {P, _} <- Pids],
    [receive {'DOWN', R, process, P, _} -> ok end || {P, R} <- Pids],
    (now_s() - T0) / N.

memory(N) ->
    erlang:garbage_collect(),
    Before = erlang:memory(processes),
    Pids = [spawn(fun idle/0) || _ <- lists:seq(1, N)],
    After = erlang:memory(processes),
    Words = lists:sum([element(2, erlang:process_info(P, memory)) || P <- lists:sublist(Pids, 100)]),
    [P ! stop || P <- Pids],
    {(After - Before) / N, Words / 100}.

sup_many(N) ->
    Spec = #{strategy => simple_one_for_one, intensity => 1, period => 5},
    Child = #{id => w, start => {?MODULE, start_link, []}, restart => temporary},
    {ok, Sup} = supervisor:start_link(?MODULE, {Spec, [Child]}),
    T0 = now_s(),
    [{ok, _} = supervisor:start_child(Sup, []) || _ <- lists:seq(1, N)],
    Start = now_s() - T0,
    T1 = now_s(),
    unlink(Sup),
    Ref = monitor(process, Sup),
    exit(Sup, shutdown),
    receive {'DOWN', Ref, process, Sup, _} -> ok end,
    {Start, now_s() - T1}.

main() -> main([]).

main(Args) ->
    Quick = Args =:= ["quick"],
    Scale = case Quick of true -> 100; false -> 1 end,
    Reps = case Quick of true -> 1; false -> 5 end,
    Call = best(Reps, fun() -> call(200000 div Scale) end),
    Cast = best(Reps, fun() -> cast(1000000 div Scale) end),
    SpawnStop = best(Reps, fun() -> spawn_stop(100000 div Scale) end),
    {MemPer, _Words} = memory(100000 div Scale),
    {SupStart, SupStop} = sup_many(100000 div Scale),
    Word = erlang:system_info(wordsize),
    io:format("{\"otp_release\": \"~s\", \"call\": ~.9f, \"cast\": ~.9f, \"spawn_stop\": ~.9f, "
              "\"idle_bytes\": ~.1f, \"sup_start_100k\": ~.4f, \"sup_stop_100k\": ~.4f, "
              "\"word\": ~b, \"scale\": ~b}~n",
              [erlang:system_info(otp_release), Call, Cast, SpawnStop, MemPer,
               SupStart, SupStop, Word, Scale]).
