//! Images as phones send them: an EXIF orientation tag is applied by default (boxes are in
//! the picture the user sees), `auto_orient=false` keeps the stored pixels, and the answer
//! says which size and orientation it used. A PNG tagged "turn 90 degrees" gives exactly
//! the answers of the same picture stored turned.

mod common;

use common::http::*;

use std::io::Cursor;

use axum::http::StatusCode;
use base64::Engine;
use hoiclip::api::ServeOptions;

/// The TIFF body of an EXIF block holding only an orientation tag.
fn exif(orientation: u8) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend([1, 0]); // one entry
    tiff.extend([0x12, 0x01, 3, 0, 1, 0, 0, 0, orientation, 0, 0, 0]);
    tiff.extend([0, 0, 0, 0]); // no next IFD
    tiff
}

fn encode(image: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// A PNG with an eXIf chunk before its image data.
fn png_with_orientation(image: &image::RgbImage, orientation: u8) -> Vec<u8> {
    let png = encode(image, image::ImageFormat::Png);
    let idat = png.windows(4).position(|w| w == b"IDAT").expect("IDAT") - 4;
    let data = exif(orientation);
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let typed: Vec<u8> = [b"eXIf".as_slice(), &data].concat();
    chunk.extend(&typed);
    chunk.extend(crc32fast::hash(&typed).to_be_bytes());
    [&png[..idat], &chunk, &png[idat..]].concat()
}

/// A JPEG with an APP1 Exif segment right after its start marker.
fn jpeg_with_orientation(image: &image::RgbImage, orientation: u8) -> Vec<u8> {
    let jpeg = encode(image, image::ImageFormat::Jpeg);
    let body: Vec<u8> = [b"Exif\0\0".as_slice(), &exif(orientation)].concat();
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend(((body.len() + 2) as u16).to_be_bytes());
    app1.extend(body);
    [&jpeg[..2], &app1, &jpeg[2..]].concat()
}

/// A 90x60 picture, different in every direction.
fn picture() -> image::RgbImage {
    image::RgbImage::from_fn(90, 60, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 4) as u8, ((x * y) % 251) as u8])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exif_orientation_is_applied_unless_asked_not_to() {
    let s = state(ServeOptions::default()).await;
    let stored = picture();
    // Tag 6: shown turned 90 degrees clockwise, so 60 wide and 90 high.
    let shown = image::imageops::rotate90(&stored);
    let tagged = png_with_orientation(&stored, 6);
    let plain = encode(&shown, image::ImageFormat::Png);

    let detect = |bytes: Vec<u8>, query: &'static str| {
        let s = s.clone();
        async move {
            let (status, _, body) = send(
                &s,
                raw(&format!("/detect?top_k=20{query}"), "image/png", bytes),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            json(&body)
        }
    };
    let turned = detect(tagged.clone(), "").await;
    assert_eq!(
        (turned["width"].as_u64(), turned["height"].as_u64()),
        (Some(60), Some(90))
    );
    assert_eq!(turned["exif_orientation"], 6);
    assert_eq!(turned["oriented"], true);
    let reference = detect(plain, "").await;
    assert_eq!(reference["exif_orientation"], 1);
    assert_eq!(reference["oriented"], false);
    assert_eq!(
        turned["triplets"], reference["triplets"],
        "the tagged file is not seen as shown"
    );

    let kept = detect(tagged, "&auto_orient=false").await;
    assert_eq!(
        (kept["width"].as_u64(), kept["height"].as_u64()),
        (Some(90), Some(60))
    );
    assert_eq!(kept["exif_orientation"], 6);
    assert_eq!(kept["oriented"], false);
    let stored_answer = detect(encode(&stored, image::ImageFormat::Png), "").await;
    assert_eq!(kept["triplets"], stored_answer["triplets"]);

    // JPEG (an APP1 Exif segment): the size follows the tag.
    let jpeg = detect(jpeg_with_orientation(&stored, 8), "").await;
    assert_eq!(
        (jpeg["width"].as_u64(), jpeg["height"].as_u64()),
        (Some(60), Some(90))
    );
    assert_eq!(jpeg["exif_orientation"], 8);
    for t in jpeg["triplets"].as_array().unwrap() {
        let b = &t["human"]["box"];
        assert!(
            b[2].as_f64().unwrap() <= 60.5 && b[3].as_f64().unwrap() <= 90.5,
            "{t}"
        );
    }
}

/// Example boxes are read in the picture as shown, like detection boxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_boxes_are_in_the_oriented_picture() {
    let s = state(ServeOptions::default()).await;
    let (status, _, body) = send(
        &s,
        post_json(
            "/verbs",
            serde_json::json!({"name": "juggle", "ing": "juggling", "objects": ["orange"]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = json(&body)["verb"]["id"].as_i64().unwrap();
    let stored = picture();
    let shown = image::imageops::rotate90(&stored);
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    // A person box 50 high: it fits the shown picture (60x90), not the stored one (90x60).
    let example = |image: String| serde_json::json!({"examples": [{"image": image, "human_box": [5, 10, 40, 85], "object_box": [20, 5, 55, 30], "object": "orange"}]});
    for image in [
        png_with_orientation(&stored, 6),
        encode(&shown, image::ImageFormat::Png),
    ] {
        let (status, _, body) = send(
            &s,
            post_json(&format!("/verbs/{id}/examples"), example(b64(image))),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    let service = s.service.clone();
    let stored_features = service
        .store()
        .example_features(service.vision_fingerprint())
        .await
        .unwrap();
    assert_eq!(stored_features.len(), 2);
    assert_eq!(stored_features[0].union, stored_features[1].union);
    assert_eq!(stored_features[0].human, stored_features[1].human);

    // In the stored pixels the same box leaves the image.
    let (status, ct, body) = send(
        &s,
        post_json(
            &format!("/verbs/{id}/examples?auto_orient=false"),
            example(b64(png_with_orientation(&stored, 6))),
        ),
    )
    .await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    );
}
