//! The gRPC codec of every driftdb service: prost messages, decoded from one contiguous slice.
//!
//! tonic hands a decoder the message inside its receive buffer (`DecodeBuf` over a
//! `BytesMut`). prost reads packed doubles eight bytes at a time, and every step advanced that
//! `BytesMut`; an ingest batch is a million doubles. This codec detaches the message's bytes
//! from the buffer instead (`copy_to_bytes`: a split, not a copy) and lets prost decode from a
//! plain byte slice, where a step is a pointer bump. Encoding is prost's, unchanged.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// prost encoding, slice decoding; named by `build.rs` as the generated services' codec.
#[derive(Debug, Clone, Copy)]
pub struct SliceCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        SliceCodec(PhantomData)
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder(PhantomData)
    }
}

/// Decodes `U` from the message's bytes as one slice.
#[derive(Debug, Clone, Copy)]
pub struct SliceDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let bytes = bytes::Buf::copy_to_bytes(buf, bytes::Buf::remaining(buf));
        // The client's bytes are at fault, not the server: INVALID_ARGUMENT (tonic's own
        // codec says INTERNAL, which clients read as a server bug worth retrying).
        U::decode(bytes.as_ref())
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed protobuf: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
