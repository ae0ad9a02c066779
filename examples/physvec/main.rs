//! `physvec`: the command-line face of the crate.
//!
//! With no argument it runs the tour, a human-readable walk through the pipeline on a
//! real buffer of this process. With a command it reads one JSON request on stdin and
//! writes one JSON response on stdout; the contract (fields, exit codes 0/1/2, error
//! kinds) is `shared/reference/cli.md`. Every command is a thin shell over the library.
//!
//! ```text
//! cargo run --release --example physvec                       # the tour
//! echo '{"page_size":4096,"segments":[[65536,12288]],"list_pages":[524288]}' \
//!     | cargo run --release --example physvec -- prp
//! echo '{"command":"prp","page_size":4096,"segments":[[65536,12288]],"list_pages":[524288]}' \
//!     | cargo run --release --example physvec -- explain     # the same, drawn for a human
//! ```

mod cli;
mod explain;
mod map;
mod nvme;
mod picture;
mod rdma;
mod sg;
mod tour;
mod vtd;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        None | Some("tour") => {
            tour::run();
            0
        }
        Some("explain") => {
            use std::io::Read;
            let mut input = String::new();
            match std::io::stdin().read_to_string(&mut input) {
                Ok(_) => explain::run(&input),
                Err(e) => {
                    eprintln!("physvec explain: cannot read stdin: {e}");
                    2
                }
            }
        }
        Some("-h") | Some("--help") | Some("help") => {
            println!("{}", USAGE);
            0
        }
        Some(cmd) => match command(cmd) {
            Some(f) => cli::run(cmd, f),
            None => {
                eprintln!("physvec: unknown command {cmd:?}\n{USAGE}");
                2
            }
        },
    };
    std::process::exit(code);
}

type Command = fn(&str) -> Result<serde_json::Value, cli::CliError>;

fn command(name: &str) -> Option<Command> {
    Some(match name {
        "prp" => nvme::prp,
        "sgl" => nvme::sgl,
        "decode-prp" => nvme::decode_prp,
        "decode-sgl" => nvme::decode_sgl,
        "sg" => sg::sg,
        "decode-sg" => sg::decode_sg,
        "mr-pages" => rdma::mr_pages,
        "mlx5-mtt" => rdma::mlx5_mtt,
        "mlx5-klm" => rdma::mlx5_klm,
        "best-page-size" => rdma::best_page_size,
        "map" => map::map,
        "vtd" => vtd::vtd,
        "vtd-translate" => vtd::vtd_translate,
        _ => return None,
    })
}

const USAGE: &str = "usage: physvec [COMMAND] < request.json
  (no command)      the tour: the whole pipeline on a buffer of this process
  prp | sgl | decode-prp | decode-sgl        NVMe data pointers
  sg | decode-sg                             Linux struct scatterlist tables
  mr-pages | mlx5-mtt | mlx5-klm | best-page-size   RDMA memory registration
  map                                        two-step DMA mapping
  vtd | vtd-translate                        Intel VT-d tables: write them, walk them
  explain        a human-readable picture of a layout: the request of prp, sgl,
                 decode-prp, decode-sgl, sg, decode-sg, mr-pages, mlx5-mtt, mlx5-klm,
                 map, vtd or vtd-translate plus a \"command\" field naming it, e.g.
                 {\"command\":\"prp\",\"page_size\":4096,\"segments\":[[65536,12288]],\"list_pages\":[524288]}
                 Offending entries are marked <== ERROR (exit 1, picture still printed).
Requests and responses are single JSON objects; exit 0 ok, 1 rejected, 2 malformed.";
