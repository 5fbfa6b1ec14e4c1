//! The floors themselves: a 64-byte Unix-socket ping-pong between two processes, and memcpy.

fn main() {
    mirai_benches::serve_floor_child();
    let floor = mirai_benches::uds_pingpong_floor(64, 1_000, 20_000);
    mirai_benches::record(
        "uds ping-pong 64 B p50",
        floor.p50_us(),
        "us",
        "uds ping-pong 64 B p99",
        floor.p99_us(),
    );
    let bytes = 256 << 20;
    let secs = mirai_benches::memcpy_fresh_floor(bytes);
    let gbps = bytes as f64 / secs / 1e9;
    mirai_benches::record(
        "memcpy 256 MiB into fresh memory",
        gbps,
        "GB/s",
        "memcpy",
        gbps,
    );
}
