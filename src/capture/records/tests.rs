use super::*;

fn record(seq: u64, layer: u32, token: u32, experts: [u32; 2], weights: [f32; 2]) -> Record {
    Record {
        seq,
        layer,
        token,
        experts: experts.to_vec(),
        weights: weights.to_vec(),
    }
}

/// Ring slots for `records`, in the order given.
fn ring(records: &[Record]) -> Vec<u32> {
    records.iter().flat_map(encode).collect()
}

/// Four decisions (2 layers x 2 tokens, top-2 of 4), in the order a kernel might make them:
/// token 1 before token 0 in layer 0.
fn four_decisions() -> Vec<Record> {
    vec![
        record(0, 0, 1, [3, 0], [0.75, 0.25]),
        record(1, 0, 0, [1, 2], [0.5, 0.5]),
        record(2, 1, 0, [2, 3], [0.625, 0.375]),
        record(3, 1, 1, [2, 0], [0.875, 0.125]),
    ]
}

/// Per layer, per expert counts of `four_decisions`.
fn four_counts() -> Vec<Vec<u64>> {
    vec![vec![1, 1, 1, 1], vec![1, 0, 2, 1]]
}

#[test]
fn a_record_round_trips_with_a_sequence_number_past_32_bits() {
    let original = record((1 << 32) + 5, 3, 7, [9, 1], [0.5, -0.25]);
    let words = encode(&original);
    assert_eq!(words.len(), record_words(2));
    assert_eq!(&words[..6], &[5, 1, 3, 7, 9, 1]);
    assert_eq!(words[6], 0.5_f32.to_bits());
    assert_eq!(decode(&words, 2), original);
}

#[test]
fn records_drained_in_two_batches_become_the_trace_by_layer_and_token() {
    let records = four_decisions();
    let mut assembler = Assembler::new(2, 2, 4, 2);
    assembler.absorb(0, &ring(&records[..2])).unwrap();
    assembler.absorb(2, &ring(&records[2..])).unwrap();
    let captured = assembler.finish(0, four_counts()).unwrap();
    let trace = &captured.trace;
    assert_eq!(captured.lost_records, 0);
    assert_eq!(trace.layer(0).experts_of(0), [1, 2]);
    assert_eq!(trace.layer(0).experts_of(1), [3, 0]);
    assert_eq!(trace.layer(1).experts_of(1), [2, 0]);
    assert_eq!(trace.layer(1).weights_of(0), Some(&[0.625, 0.375][..]));
}

#[test]
fn a_stale_slot_is_a_lost_record_that_must_match_the_overflow_counter() {
    // The slot of sequence 3 still holds sequence 1 (ring of capacity 2): record 3 was dropped.
    let mut records = four_decisions();
    records[3] = records[1].clone();
    let assemble = |overflow| {
        let mut assembler = Assembler::new(2, 2, 4, 2);
        assembler.absorb(0, &ring(&records)).unwrap();
        assembler.finish(overflow, four_counts())
    };
    let captured = assemble(1).unwrap();
    assert_eq!(captured.lost_records, 1);
    assert_eq!(captured.trace.layer(1).experts_of(1), [] as [ExpertId; 0]);
    assert_eq!(captured.trace.layer(1).experts_of(0), [2, 3]);
    assert_eq!(
        assemble(0).err().map(|e| e.to_string()),
        Some("ring buffer: 1 records missing but the kernel counted 0 lost".into())
    );
}

#[test]
fn counters_that_disagree_with_the_records_are_an_error() {
    let mut assembler = Assembler::new(2, 2, 4, 2);
    assembler.absorb(0, &ring(&four_decisions())).unwrap();
    let mut counts = four_counts();
    counts[1][2] = 3;
    assert_eq!(
        assembler.finish(0, counts).err().map(|e| e.to_string()),
        Some("layer 1 expert 2: the kernel counted 3 decisions but 2 records arrived".into())
    );
}

#[test]
fn corrupt_or_misordered_drains_are_named() {
    let error = |records: &[Record], first_seq| {
        let mut assembler = Assembler::new(2, 2, 4, 2);
        assembler
            .absorb(first_seq, &ring(records))
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(
        error(&[record(0, 0, 0, [4, 0], [1.0, 0.0])], 0),
        Some("ring record 0: expert 4 of 4 experts".into())
    );
    assert_eq!(
        error(&[record(0, 2, 0, [1, 0], [1.0, 0.0])], 0),
        Some("ring record 0: layer 2, token 0 outside 2 layers x 2 tokens".into())
    );
    let twice = [
        record(0, 0, 0, [1, 0], [1.0, 0.0]),
        record(1, 0, 0, [1, 0], [1.0, 0.0]),
    ];
    assert_eq!(
        error(&twice, 0),
        Some("ring record 1: second decision for layer 0, token 0".into())
    );
    assert_eq!(
        error(&[], 5),
        Some("ring drain out of order: got sequence 5, expected 0".into())
    );
    let mut assembler = Assembler::new(2, 2, 4, 2);
    assembler.absorb(0, &ring(&four_decisions()[..3])).unwrap();
    assert_eq!(
        assembler
            .finish(0, four_counts())
            .err()
            .map(|e| e.to_string()),
        Some("ring drained 3 sequence numbers for 4 decisions".into())
    );
}
