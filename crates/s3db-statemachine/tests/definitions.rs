//! Machine definitions are validated at construction; each error names what to fix.

mod common;

use std::time::Duration;

use common::*;
use s3db_statemachine::{
    DefinitionError, Machine, MachineBuilder, State, StateMachinePlugin, Trigger,
};

fn err(b: MachineBuilder) -> DefinitionError {
    match b.build() {
        Err(e) => e,
        Ok(m) => panic!("{m:?} should be refused"),
    }
}

fn base() -> MachineBuilder {
    Machine::builder("m", "things")
}

#[test]
fn refuses_incomplete_machines() {
    assert_eq!(
        err(base()),
        DefinitionError::NoStates {
            machine: "m".into()
        }
    );
    assert_eq!(
        err(base().state(State::final_state("a"))),
        DefinitionError::NoInitialState {
            machine: "m".into()
        }
    );
    assert_eq!(
        err(base().initial("x").state(State::final_state("a"))),
        DefinitionError::UnknownInitialState {
            machine: "m".into(),
            state: "x".into()
        }
    );
}

#[test]
fn refuses_broken_graphs() {
    assert_eq!(
        err(base()
            .initial("a")
            .state(State::new("a").on("GO", "b"))
            .state(State::final_state("a"))),
        DefinitionError::DuplicateState {
            machine: "m".into(),
            state: "a".into()
        }
    );
    assert_eq!(
        err(base()
            .initial("a")
            .state(State::new("a").on("GO", "b").on("GO", "c"))),
        DefinitionError::DuplicateEvent {
            machine: "m".into(),
            state: "a".into(),
            event: "GO".into()
        }
    );
    assert_eq!(
        err(base()
            .initial("a")
            .state(State::new("a").on("GO", "nowhere"))),
        DefinitionError::UnknownTarget {
            machine: "m".into(),
            state: "a".into(),
            event: "GO".into(),
            target: "nowhere".into()
        }
    );
    assert_eq!(
        err(base()
            .initial("a")
            .state(State::new("a").on("GO", "b"))
            .state(State::final_state("b"))
            .state(State::new("island").on("GO", "b"))),
        DefinitionError::UnreachableState {
            machine: "m".into(),
            state: "island".into(),
            initial: "a".into()
        }
    );
    assert_eq!(
        err(base()
            .initial("a")
            .state(State::new("a").on("GO", "b"))
            .state(State::final_state("b").on("BACK", "a"))),
        DefinitionError::FinalStateWithTransitions {
            machine: "m".into(),
            state: "b".into(),
            events: vec!["BACK".into()]
        }
    );
    assert_eq!(
        err(base()
            .initial("a")
            .state(State::new("a").on("GO", "b"))
            .state(State::new("b"))),
        DefinitionError::DeadEnd {
            machine: "m".into(),
            state: "b".into()
        }
    );
}

#[test]
fn refuses_guards_and_triggers_on_unknown_events() {
    let e = err(base()
        .initial("a")
        .state(
            State::new("a")
                .on("GO", "b")
                .guard("FLY", |_| async { Ok(true) }),
        )
        .state(State::final_state("b")));
    assert_eq!(
        e,
        DefinitionError::UnknownEvent {
            machine: "m".into(),
            state: "a".into(),
            what: "guard",
            event: "FLY".into(),
            valid: vec!["GO".into()]
        }
    );
    let e = err(base()
        .initial("a")
        .state(
            State::new("a")
                .on("GO", "b")
                .trigger(Trigger::cron("* * * * *").send("FLY")),
        )
        .state(State::final_state("b")));
    assert!(
        matches!(&e, DefinitionError::UnknownEvent { what: "trigger", event, .. } if event == "FLY"),
        "{e}"
    );
    let e = err(base()
        .initial("a")
        .state(
            State::new("a")
                .on("GO", "b")
                .trigger(Trigger::cron("every minute").send("GO")),
        )
        .state(State::final_state("b")));
    assert!(
        matches!(&e, DefinitionError::BadCron { trigger, pattern, .. } if trigger == "a~0" && pattern == "every minute"),
        "{e}"
    );
    for (t, what) in [
        (Trigger::cron("* * * * *"), "does nothing"),
        (
            Trigger::cron("* * * * *").send("GO").max_triggers(0),
            "at least 1",
        ),
        (
            Trigger::on_update().send("GO").on_max_reached("GO"),
            "needs max_triggers",
        ),
    ] {
        let e = err(base()
            .initial("a")
            .state(State::new("a").on("GO", "b").trigger(t))
            .state(State::final_state("b")));
        assert!(
            matches!(&e, DefinitionError::BadTrigger { reason, .. } if reason.contains(what)),
            "{e}"
        );
    }
}

#[test]
fn refuses_bad_names() {
    let e = err(Machine::builder("m", "things")
        .initial("a/b")
        .state(State::final_state("a/b")));
    assert!(
        matches!(&e, DefinitionError::BadName { what: "state", name, .. } if name == "a/b"),
        "{e}"
    );
    let e = err(Machine::builder("", "things")
        .initial("a")
        .state(State::final_state("a")));
    assert!(matches!(
        e,
        DefinitionError::BadName {
            what: "machine id",
            ..
        }
    ));
}

#[test]
fn plugin_builder_validates() {
    assert_eq!(
        StateMachinePlugin::builder().build().err(),
        Some(DefinitionError::NoMachines)
    );
    let dup = StateMachinePlugin::builder()
        .machine(order_machine())
        .machine(order_machine())
        .build()
        .err();
    assert_eq!(
        dup,
        Some(DefinitionError::DuplicateMachine {
            machine: "order".into()
        })
    );
    let shared = StateMachinePlugin::builder()
        .machine(order_machine())
        .machine(
            Machine::builder("other", "orders")
                .initial("x")
                .state(State::final_state("x")),
        )
        .build()
        .err();
    assert!(matches!(
        shared,
        Some(DefinitionError::SharedStateField { .. })
    ));
    let ttl = StateMachinePlugin::builder()
        .machine(order_machine())
        .lock_ttl(Duration::from_millis(1))
        .build()
        .err();
    assert!(matches!(
        ttl,
        Some(DefinitionError::BadDuration {
            setting: "lock_ttl",
            ..
        })
    ));
    // A definition error converts into a core error that says what to fix.
    let core: s3db_core::Error = DefinitionError::NoMachines.into();
    assert!(core.to_string().contains("no state machine configured"));
}

#[test]
fn visualizes_as_dot() -> TestResult {
    let m = order_machine().build()?;
    let dot = m.visualize();
    let expected = [
        "digraph \"order\" {",
        "\"__start\" -> \"pending\";",
        "\"pending\" [shape=circle];",
        "\"shipped\" [shape=doublecircle];",
        "\"cancelled\" [shape=doublecircle];",
        "\"pending\" -> \"paid\" [label=\"PAY\"];",
        "\"pending\" -> \"cancelled\" [label=\"CANCEL\"];",
        "\"paid\" -> \"shipped\" [label=\"SHIP\"];",
    ];
    for line in expected {
        assert!(dot.contains(line), "missing {line:?} in\n{dot}");
    }
    assert_eq!(dot.matches(" -> ").count(), 4);
    assert!(dot.trim_end().ends_with('}'));
    assert_eq!(m.events_of("pending"), ["CANCEL", "PAY"]);
    assert!(m.is_final("shipped") && !m.is_final("paid"));
    Ok(())
}
