use anyhow::bail;
pub async fn run(_u: &str, _n: u64, _c: usize, _l: u64) -> anyhow::Result<serde_json::Value> {
    bail!("the share benchmark needs the worker")
}
