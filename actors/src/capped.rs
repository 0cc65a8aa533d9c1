//! Reading a body chunk by chunk under a size cap: the one reader behind the LLM client's
//! replies and the daemon's request bodies, so that no peer can make either buffer more than
//! its limit, however it sends the bytes.

use futures::{Stream, StreamExt};

/// Why a capped read stopped.
#[derive(Debug, PartialEq)]
pub enum Capped<E> {
    /// The body is longer than the limit (reading stopped there).
    TooLarge,
    /// The stream failed.
    Read(E),
}

/// Collects `stream` into one buffer, refusing bodies over `limit` bytes.
pub async fn read_capped<S, B, E>(stream: S, limit: usize) -> Result<Vec<u8>, Capped<E>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    let mut stream = std::pin::pin!(stream);
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Capped::Read)?;
        let chunk = chunk.as_ref();
        if body.len() + chunk.len() > limit {
            return Err(Capped::TooLarge);
        }
        body.extend_from_slice(chunk);
    }
    Ok(body)
}

/// A reqwest response's body as a stream of chunks (without reqwest's `stream` feature).
pub fn response_chunks(
    resp: reqwest::Response,
) -> impl Stream<Item = Result<impl AsRef<[u8]>, reqwest::Error>> {
    futures::stream::unfold(resp, |mut r| async move {
        r.chunk().await.transpose().map(|c| (c, r))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix::test]
    async fn reads_up_to_the_limit_and_not_a_byte_more() {
        let chunks =
            || futures::stream::iter(vec![Ok::<_, String>(vec![1u8; 3]), Ok(vec![2u8; 3])]);
        assert_eq!(read_capped(chunks(), 6).await.unwrap().len(), 6);
        assert_eq!(read_capped(chunks(), 5).await, Err(Capped::TooLarge));
        let failing = futures::stream::iter(vec![Ok(vec![1u8]), Err("reset".to_string())]);
        assert_eq!(
            read_capped(failing, 10).await,
            Err(Capped::Read("reset".into()))
        );
    }
}
